"""Development tools: the simulated Twilio, the terminal phone and the server harness. Never imported by the service."""
