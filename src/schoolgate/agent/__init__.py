"""The schoolgate integration agent: the portal's local API, a durable outbox, delivery to the provider."""
