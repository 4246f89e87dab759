"""The in-sandbox executor: shells, files and the editor behind HTTP on a Unix socket or TCP.

Imports only ``protocol`` and light dependencies, so runtime images stay small.
"""
