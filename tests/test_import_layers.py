"""Imports point down: every module of packnet_jax/ and tools/ imports only its own package or lower layers.

The layers, highest first (a module may import its own package and any lower layer;
packages that share a layer do not import each other, except the pairs in SIBLING_IMPORTS):

  layer  packages                                          what they are
  -----  ------------------------------------------------  ---------------------------------------------
  9      tools                                             developer tools (benchmarks, comparisons)
  8      entry points: main, infer, export, eval/__main__, command lines and the package facade
         convert/__main__, data/prepare, packnet_jax (the facade)
  7      cli                                               the one flag/error helper of the command lines
  6      api, train, eval                                  load a model; train; evaluate
  5      workdir, parallel, config_utils                   run directories, host↔device layout, configs
  4      convert                                           torch checkpoints → our networks' variables
  3      models, data                                      Flax networks; readers and input pipelines
  2      losses                                            pure losses and the SfM objective
  1      geometry                                          poses, cameras, sampling, view synthesis
  0      utils                                             checks, dtypes, I/O, ordering anchors

One more rule: only the training command line (main) and tools import train/, so evaluating,
inferring and exporting never pull in the training stack (optax, orbax, clu writers).

Imports anywhere in a file count (also those inside functions), since each pulls the
imported module in when it runs.
"""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent

# Package (first component below packnet_jax, or a whole module path) → layer.
LAYERS = {
    'tools': 9,
    'packnet_jax': 8, 'packnet_jax.main': 8, 'packnet_jax.infer': 8, 'packnet_jax.export': 8,
    'packnet_jax.eval.__main__': 8, 'packnet_jax.convert.__main__': 8, 'packnet_jax.data.prepare': 8,
    'packnet_jax.cli': 7,
    'packnet_jax.api': 6, 'packnet_jax.train': 6, 'packnet_jax.eval': 6,
    'packnet_jax.workdir': 5, 'packnet_jax.parallel': 5, 'packnet_jax.config_utils': 5,
    'packnet_jax.convert': 4,
    'packnet_jax.models': 3, 'packnet_jax.data': 3,
    'packnet_jax.losses': 2,
    'packnet_jax.geometry': 1,
    'packnet_jax.utils': 0,
}
# Same-layer imports between packages that are part of the design: training validation and the
# Python API call the one evaluation function.
SIBLING_IMPORTS = {('packnet_jax.train', 'packnet_jax.eval'), ('packnet_jax.api', 'packnet_jax.eval'),
                   # a workdir's config.json is read back through the config schema
                   ('packnet_jax.workdir', 'packnet_jax.config_utils')}
# Packages that only the listed packages (and their own modules) may import.
ONLY_IMPORTED_BY = {'packnet_jax.train': {'packnet_jax.main', 'tools'}}

# Known violations: (importing module, imported module) pairs allowed for now; the test fails if one
# is no longer found, so the set cannot go stale. Empty: every import points down.
KNOWN_VIOLATIONS = set()


def module_name(path):
  parts = path.relative_to(ROOT).with_suffix('').parts
  return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def package_of(module):
  """The longest key of LAYERS that is `module` or a package holding it."""
  parts = module.split('.')
  for n in range(len(parts), 0, -1):
    if '.'.join(parts[:n]) in LAYERS:
      return '.'.join(parts[:n])
  raise KeyError(f'{module}: no layer in LAYERS (add its package to the table)')


def _resolve(name):
  """`name` (a module or a name inside one) → the module it loads: the longest existing file prefix."""
  parts = name.split('.')
  for n in range(len(parts), 0, -1):
    base = ROOT.joinpath(*parts[:n])
    if base.with_suffix('.py').is_file() or (base / '__init__.py').is_file():
      return '.'.join(parts[:n])
  return name


def project_imports(path):
  """The project modules (packnet_jax.*, tools.*) that the file at `path` imports, with line numbers."""
  module = module_name(path)
  package = module if path.name == '__init__.py' else module.rpartition('.')[0]
  found = []
  for node in ast.walk(ast.parse(path.read_text(), str(path))):
    if isinstance(node, ast.Import):
      names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ''
      if node.level:
        anchor = package.split('.')[:len(package.split('.')) - (node.level - 1)]
        base = '.'.join(anchor + ([base] if base else []))
      names = [f'{base}.{alias.name}' for alias in node.names]
    else:
      continue
    for name in names:
      if name.split('.')[0] in ('packnet_jax', 'tools'):
        found.append((node.lineno, _resolve(name)))
  return found


def violations(files):
  """(importer, imported, file:line, why) for every import that points up or sideways."""
  out = []
  for path in files:
    importer = module_name(path)
    src_pkg = package_of(importer)
    for line, imported in project_imports(path):
      dst_pkg = package_of(imported)
      if dst_pkg == src_pkg:
        continue
      src_layer, dst_layer = LAYERS[src_pkg], LAYERS[dst_pkg]
      if dst_layer > src_layer:
        why = f'layer {src_layer} imports layer {dst_layer}'
      elif dst_pkg in ONLY_IMPORTED_BY and src_pkg not in ONLY_IMPORTED_BY[dst_pkg]:
        why = f'only {sorted(ONLY_IMPORTED_BY[dst_pkg])} import {dst_pkg}'
      elif dst_layer == src_layer and (src_pkg, dst_pkg) not in SIBLING_IMPORTS:
        why = f'{src_pkg} and {dst_pkg} share layer {src_layer}'
      else:
        continue
      out.append((importer, imported, f'{path.relative_to(ROOT)}:{line}', why))
  return out


def _project_files():
  return sorted(list((ROOT / 'packnet_jax').rglob('*.py')) + list((ROOT / 'tools').rglob('*.py')))


def test_every_module_has_a_layer():
  for path in _project_files():
    package_of(module_name(path))


def test_imports_point_down():
  found = violations(_project_files())
  new = [f'{where}: {importer} imports {imported} ({why})' for importer, imported, where, why in found
         if (importer, imported) not in KNOWN_VIOLATIONS]
  assert not new, 'imports that point up or sideways:\n' + '\n'.join(new)


def test_known_violations_are_still_there():
  """A violation that has been fixed must leave KNOWN_VIOLATIONS, so the list cannot go stale."""
  found = {(importer, imported) for importer, imported, _, _ in violations(_project_files())}
  assert KNOWN_VIOLATIONS - found == set(), f'fixed, remove from KNOWN_VIOLATIONS: {KNOWN_VIOLATIONS - found}'


@pytest.mark.parametrize('where, source, expected', [
    ('losses/bad', 'from packnet_jax.models import sfm_model\n', 'layer 2 imports layer 3'),
    ('losses/bad', 'def f():\n  import packnet_jax.train.optim\n', 'layer 2 imports layer 6'),
    ('losses/bad', 'from packnet_jax.geometry import pose\n', None),
    ('models/bad', 'from packnet_jax.data import image_io\n', 'packnet_jax.models and packnet_jax.data share layer 3'),
    ('infer', 'from packnet_jax.train.optim import x\n', "only ['packnet_jax.main', 'tools'] import packnet_jax.train"),
    ('main', 'from packnet_jax.train.optim import x\n', None),
])
def test_checker_reports_bad_imports(tmp_path, monkeypatch, where, source, expected):
  """The checker itself, on a fake tree: each bad import is reported with its file, line and rule."""
  for module in ('__init__', 'losses/__init__', 'models/sfm_model', 'train/optim', 'geometry/pose',
                 'data/image_io'):
    target = tmp_path / 'packnet_jax' / f'{module}.py'
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text('')
  bad = tmp_path / 'packnet_jax' / f'{where}.py'
  bad.parent.mkdir(parents=True, exist_ok=True)
  bad.write_text(source)
  monkeypatch.setitem(globals(), 'ROOT', tmp_path)
  found = [(line, why) for _, _, line, why in violations([bad])]
  assert found == ([] if expected is None else [(f'packnet_jax/{where}.py:{source.count(chr(10))}', expected)])
