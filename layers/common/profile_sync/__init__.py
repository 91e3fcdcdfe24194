"""target-profile-sync domain package: validation, splitting, Target client, accounting."""
