"""Social messaging sinks: post observatory messages to chat services (Slack)."""
