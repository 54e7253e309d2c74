"""utils.storage and the orbax s3 patch: path rules, the pinned private-API reach, and bad bucket URLs.

The bad-URL cases run `main` as a user does and must end in one `error:` line
naming the URL, in seconds (the check runs before jax is imported).
"""
import os
import pathlib
import subprocess
import sys
import time

import pytest

from lib import bucket_servers
from lib.env import single_device_env
from packnet_jax.utils import storage

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_paths_and_urls_are_told_apart():
  assert storage.scheme('/tmp/run') is None and storage.scheme('run') is None
  assert storage.scheme('gs://b/run') == 'gs' and storage.scheme('S3://b/run') == 's3'
  assert storage.join('s3://b/run/', 'checkpoints', '4') == 's3://b/run/checkpoints/4'
  assert storage.join('/tmp/run', 'config.json') == '/tmp/run/config.json'
  assert storage.absolute('gs://b/run/') == 'gs://b/run'
  assert storage.absolute('run') == os.path.join(os.getcwd(), 'run')
  with pytest.raises(ValueError, match=r'az://b/run: unsupported URL scheme az://'):
    storage.scheme('az://b/run')


def test_local_workdir_checks_stay_as_before(tmp_path):
  assert storage.use_bucket(str(tmp_path)) == str(tmp_path)  # nothing imported, nothing checked
  storage.write_text(str(tmp_path / 'a.txt'), 'x')
  assert storage.read_text(str(tmp_path / 'a.txt')) == 'x' and storage.isfile(str(tmp_path / 'a.txt'))


def test_gs_url_without_gcsfs_names_the_package(monkeypatch):
  monkeypatch.setitem(sys.modules, 'gcsfs', None)  # import gcsfs → ImportError
  with pytest.raises(ValueError, match=r'^--workdir: gs://b/run needs the gcsfs package: pip install gcsfs'):
    storage.use_bucket('gs://b/run')


def test_orbax_s3_patch_builds_tensorstore_s3_specs(monkeypatch):
  """Pinned: orbax 0.12.8's spec builder, patched, gives tensorstore's s3 driver the AWS endpoint/region."""
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel
  from orbax.checkpoint._src.serialization import tensorstore_utils as tsu  # pylint: disable=import-outside-toplevel
  from packnet_jax.utils import _patches  # pylint: disable=import-outside-toplevel
  assert ocp.__version__ == _patches.ORBAX_VERSION
  monkeypatch.setenv('AWS_ENDPOINT_URL', 'http://127.0.0.1:9')
  monkeypatch.setenv('AWS_REGION', 'eu-west-1')
  monkeypatch.delenv('AWS_ENDPOINT_URL_S3', raising=False)
  _patches.install_orbax_s3()
  _patches.install_orbax_s3()  # idempotent
  spec = tsu.build_kvstore_tspec('s3://bkt/run/checkpoints/4/state', use_ocdbt=True)
  assert spec['driver'] == 'ocdbt'
  assert spec['base'] == {'driver': 's3', 'bucket': 'bkt', 'path': 'run/checkpoints/4/state',
                          'endpoint': 'http://127.0.0.1:9', 'aws_region': 'eu-west-1'}
  plain = tsu.build_kvstore_tspec('s3://bkt/run/x/', name='a.b', use_ocdbt=False)
  assert plain == {'driver': 's3', 'bucket': 'bkt', 'path': 'run/x/a.b', 'endpoint': 'http://127.0.0.1:9',
                   'aws_region': 'eu-west-1'}
  # gs:// and local folders are built exactly as orbax builds them.
  assert tsu.build_kvstore_tspec('gs://bkt/run', use_ocdbt=False) == {'driver': 'gcs', 'bucket': 'bkt',
                                                                      'path': 'run'}
  assert tsu.build_kvstore_tspec('/tmp/run', use_ocdbt=False) == {'driver': 'file', 'path': '/tmp/run'}


def test_epath_routing_survives_an_earlier_local_path(monkeypatch):
  """etils caches its TensorFlow check at the first path; bucket URLs must still go to fsspec."""
  from etils import epath  # pylint: disable=import-outside-toplevel
  from etils.epath import backend  # pylint: disable=import-outside-toplevel
  from packnet_jax.utils import _patches  # pylint: disable=import-outside-toplevel
  monkeypatch.delenv('EPATH_USE_TF', raising=False)
  from etils.epath import gpath  # pylint: disable=import-outside-toplevel
  gpath._is_tf_installed.cache_clear()  # pylint: disable=protected-access
  assert epath.Path('s3://b/x')._backend is backend.tf_backend  # pylint: disable=protected-access
  epath.Path('/tmp').exists()  # a local path first: the check is now cached
  _patches.route_epath_to_fsspec()
  assert epath.Path('s3://b/x')._backend is backend.fsspec_backend  # pylint: disable=protected-access
  assert epath.Path('gs://b/x')._backend is backend.fsspec_backend  # pylint: disable=protected-access


def _main_error(workdir, env, tmp_path):
  start = time.time()
  proc = subprocess.run([sys.executable, '-m', 'packnet_jax.main', '--config=configs/demo.py:/nonexistent',
                         f'--workdir={workdir}', '--config.arch.max_steps=1'], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=120)
  lines = [line for line in proc.stderr.splitlines() if line.startswith('error:')]
  return proc.returncode, lines, proc.stderr, time.time() - start


@pytest.fixture(scope='module')
def s3():
  missing = bucket_servers.missing_packages('s3')
  if missing:
    pytest.skip(f'needs {", ".join(missing)} (pip install -r requirements-cloud.txt)')
  with bucket_servers.s3_server() as server:
    yield server


@pytest.mark.parametrize('case', ['no credentials', 'no such bucket', 'endpoint down'])
def test_bad_bucket_is_one_error_line_naming_the_url(s3, case, tmp_path):
  env = s3.child_env(single_device_env())
  url = f'{s3.url}/run'
  if case == 'no credentials':
    env.pop('AWS_ACCESS_KEY_ID')
    env.pop('AWS_SECRET_ACCESS_KEY')
    expected = 'Unable to locate credentials'
  elif case == 'no such bucket':
    url = 's3://no-such-bucket/run'
    expected = "bucket 'no-such-bucket' does not exist"
  else:
    env['AWS_ENDPOINT_URL'] = f'http://127.0.0.1:{bucket_servers.free_port()}'
    expected = 'Could not connect to the endpoint URL'
  rc, lines, stderr, seconds = _main_error(url, env, tmp_path)
  assert rc == 1 and len(lines) == 1, stderr[-2000:]
  assert lines[0].startswith(f'error: --workdir: {url}: ') and expected in lines[0], lines
  assert 'Traceback' not in stderr
  assert seconds < 60, seconds  # seconds on an idle machine; the bound leaves room for a loaded CI
