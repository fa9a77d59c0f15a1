"""Training runs: manifests, checkpoint resolution across resumed segments, and the output lock."""
