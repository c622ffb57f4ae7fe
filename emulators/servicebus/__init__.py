"""A Docker-free Azure Service Bus emulator that the unchanged azure-servicebus SDK talks to over AMQP 1.0."""
