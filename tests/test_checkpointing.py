"""Checkpoint manager start-up: partial writes of a killed run are removed, complete ones kept."""
import os

from packnet_jax.workdir import checkpoints as checkpointing


def test_partial_writes_are_removed_and_complete_checkpoints_kept(tmp_path):
  directory = tmp_path / checkpointing.CHECKPOINT_DIR
  partial = directory / '10.orbax-checkpoint-tmp-1795626976'
  complete = directory / '5'
  for d in (partial, complete):
    d.mkdir(parents=True)
    (d / 'data').write_bytes(b'x' * 16)
  manager = checkpointing.create_manager(tmp_path, keep=2, async_save=False)
  assert sorted(os.listdir(directory)) == ['5']
  assert (complete / 'data').read_bytes() == b'x' * 16
  manager.close()
