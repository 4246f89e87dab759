"""The ``corral`` command and what it runs in-process: ``corral up`` (``up``), the bench, batches.

A deployment unit of its own: it drives the others (controller, workers, images) and the SDK;
nothing else imports it.
"""
