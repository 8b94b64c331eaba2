"""How secrets look when an API shows a configuration: masked, never echoed."""

SECRET_MASK = "***"  # noqa: S105 - the mask shown instead of secrets
