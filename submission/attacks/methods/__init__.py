"""The attack methods, one module per family; each concrete `Attack` subclass with a `name` is registered by
`submission.attacks` (adding a method is adding a module here)."""
