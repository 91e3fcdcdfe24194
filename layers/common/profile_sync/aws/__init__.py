"""AWS adapters (S3, DynamoDB, Secrets Manager) behind the domain code."""
