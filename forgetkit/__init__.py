"""forgetkit: measure what fine-tuning a multimodal LLM makes it forget."""

__version__ = "0.1.0"
