"""onlearn: serve a model over HTTP and keep it learning from the labels that come back."""
