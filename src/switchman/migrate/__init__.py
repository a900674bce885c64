"""Moving to switchman from another gateway's config (``switchman import-litellm``)."""
