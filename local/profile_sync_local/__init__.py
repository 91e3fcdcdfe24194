"""The local side: CLI, Target emulator, local pipeline runner. Never shipped to Lambda."""
