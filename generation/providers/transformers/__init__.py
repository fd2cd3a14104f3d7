"""The `transformers` text provider: style, script and storyboard from a local causal language model (workers)."""
