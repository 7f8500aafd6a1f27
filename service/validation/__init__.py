"""The validator pipeline and the built-in validators."""
