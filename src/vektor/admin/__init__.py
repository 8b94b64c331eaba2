"""Administration: every account with its quotas and this month's usage; disabling,
enabling, promoting and limiting accounts (admins only, and operators on the command line)."""
