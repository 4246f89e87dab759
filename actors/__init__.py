"""The actor backbone: kernel, controller, audit and observers."""
