"""PackNet-SfM checkpoint conversion (no torch needed).

* `torch_pickle.load(path)`: restricted reader of torch.save files (zip and legacy).
* `checkpoint.read_checkpoint(path)`: per-network state dicts + config of a `.ckpt`.
* `keymap`: torch key ↔ Flax variable path mapping.
* `converter.convert_checkpoint(path)` → ConvertedModel; `save_converted` / `load_converted`
  for the converted directory (orbax `variables/` + `model_config.json`).

CLI: `python -m packnet_jax.convert --checkpoint X.ckpt --output DIR`.
"""
