"""Helpers shared by the tests (tests/ is on the import path: setup.cfg [tool:pytest] pythonpath).

  env            device layouts and XLA options of test subprocesses (one device, fast compile)
  fixtures       the vendored reference fixtures (tests/fixtures/reference) and NCHW → NHWC
  synthetic      the synthetic KITTI tree, written as a user writes it
  recipe         the deterministic weight recipe of the reference fixtures (docs/reference.md §9)
  imagenet_recipe  torchvision-layout ResNet weights from a seed, and the script that made the fixtures
  noise          parity checks as data (asserted by the tests, measured by tools/measure_noise.py)
  tiny_training  a tiny depth net and config for the training-loop tests
  torch_writer   torch.save files without torch
  pil_jitter     the reference's colour jitter run by PIL (the oracle of the device jitter)
  ddad_scene     a tiny DDAD (DGP JSON) scene
"""
