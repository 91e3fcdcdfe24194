"""Adobe Target profile API client."""
