"""Host↔device layout (replicate, shard, unreplicate), below both training and evaluation."""
