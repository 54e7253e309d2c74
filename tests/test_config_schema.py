"""configs/default.py is the one schema: the code reads no undeclared key, and no declared key goes unread.

A scan of packnet_jax/: every `config.<a>.<b>...` chain must resolve in the default
config, and every key read from a per-split dataset dict (`_get(cfg, 'key')`,
`cfg['key']`, `ds_config['key']`) must be a declared `datasets.<split>` or
`datasets.augmentation` key. Conversely every declared leaf key's name must occur
in the code. A key added to the code without a declaration (so that only a
`.get(key, default)` would ever see it) fails here.
"""
import io
import pathlib
import re
import tokenize

import ml_collections

from configs import default

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _code_only(text):
  """The source without strings and comments (docstrings mention 'config.json' and such)."""
  kept = [tok.string for tok in tokenize.generate_tokens(io.StringIO(text).readline)
          if tok.type not in (tokenize.STRING, tokenize.COMMENT)
          and not (hasattr(tokenize, 'FSTRING_MIDDLE') and tok.type == tokenize.FSTRING_MIDDLE)]
  return ' '.join(kept).replace(' . ', '.')


SOURCES = {p: p.read_text() for p in sorted((ROOT / 'packnet_jax').rglob('*.py'))}
CODE = {p: _code_only(text) for p, text in SOURCES.items()}
# convert/ reads the *reference's* stored yacs config, not ours.
OUR_CONFIG_READERS = {p: t for p, t in SOURCES.items() if 'convert' not in p.parts}
# ConfigDict methods that may follow a chain; the chain ends there.
METHODS = {'to_dict', 'get', 'items', 'keys', 'values', 'lock', 'unlock', 'update', 'to_json',
           'to_json_best_effort', 'copy_and_resolve_references'}
# Keys the data pipeline adds to a split's dict itself (config_utils.dataset_config).
DERIVED_DATASET_KEYS = {'with_pose'}


def _config_chains():
  for path, text in CODE.items():
    for match in re.finditer(r'(?<![\w.])config((?:\.[A-Za-z_]\w*)+)', text):
      yield path, match.group(1)[1:].split('.')


def test_every_config_chain_in_the_code_is_declared():
  schema = default.get_config()
  missing = []
  for path, parts in _config_chains():
    node = schema
    for part in parts:
      if not isinstance(node, ml_collections.ConfigDict) or part in METHODS:
        break
      if part not in node:
        missing.append(f'{path.relative_to(ROOT)}: config.{".".join(parts)}')
        break
      node = node[part]
  assert not missing, 'read by the code but not declared in configs/default.py:\n' + '\n'.join(missing)


def _dataset_keys_read():
  pattern = re.compile(r"(?:_get\(cfg, |\b(?:cfg|ds_config|dataset_config)\[|\bcfg\.get\()'(\w+)'")
  for path, text in OUR_CONFIG_READERS.items():
    for match in pattern.finditer(text):
      yield path, match.group(1)


def test_every_dataset_key_in_the_code_is_declared():
  schema = default.get_config().datasets
  declared = set(schema.train.keys()) | set(schema.augmentation.keys()) | DERIVED_DATASET_KEYS
  missing = sorted({f'{p.relative_to(ROOT)}: {key!r}' for p, key in _dataset_keys_read() if key not in declared})
  assert not missing, 'dataset keys read but not declared under datasets.<split>:\n' + '\n'.join(missing)
  assert len(list(_dataset_keys_read())) > 10   # the scan does see the readers


def _leaves(node, prefix=''):
  for key, value in node.items():
    if isinstance(value, ml_collections.ConfigDict):
      yield from _leaves(value, f'{prefix}{key}.')
    else:
      yield prefix + key


def test_every_declared_key_is_read_somewhere():
  code = '\n'.join(SOURCES.values())
  unread = [leaf for leaf in _leaves(default.get_config())
            if not re.search(rf"(\.|'|\"|\b){re.escape(leaf.split('.')[-1])}\b", code)]
  assert not unread, 'declared in configs/default.py but never read by packnet_jax/:\n' + '\n'.join(unread)
