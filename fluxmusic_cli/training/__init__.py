"""Fine-tuning: finding tracks and captions, preparing latents and embeddings once, training."""
