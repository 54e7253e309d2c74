"""Local object-store servers for the bucket-workdir tests: S3 (moto) and GCS (gcp-storage-emulator).

Each server runs as a subprocess on 127.0.0.1 on a free port and is stopped by
its context manager. `env` is what points every client (boto3/s3fs/tensorstore,
gcsfs/tensorstore) at it and blocks credential and metadata look-ups, so that
nothing leaves the machine.
"""
import contextlib
import dataclasses
import importlib.util
import os
import socket
import subprocess
import sys
import tempfile
import time

BUCKET = 'packnet-test'


@dataclasses.dataclass
class Server:
    env: dict        # what points the clients at the server (empty value: unset the variable)
    url: str         # the bucket, e.g. s3://packnet-test
    proc: subprocess.Popen

    def child_env(self, base):
        """`base` (a dict) with `env` applied, for a subprocess."""
        out = dict(base)
        for key, value in self.env.items():
            if value:
                out[key] = value
            else:
                out.pop(key, None)
        return out

# What both servers' clients must never do: find real credentials or ask a metadata server.
_ISOLATION = {
    'AWS_EC2_METADATA_DISABLED': 'true',
    'AWS_CONFIG_FILE': os.devnull,
    'AWS_SHARED_CREDENTIALS_FILE': os.devnull,
    'AWS_PROFILE': '',
    'GCE_METADATA_HOST': '127.0.0.1:1',
    'GCE_METADATA_IP': '127.0.0.1:1',
    'GCE_METADATA_ROOT': '127.0.0.1:1',
    'NO_GCE_CHECK': 'true',
    'GOOGLE_APPLICATION_CREDENTIALS': '',
    'CLOUDSDK_CONFIG': os.devnull,
}


def missing_packages(scheme):
    """The packages a scheme's tests need that are not installed (empty if none)."""
    needed = {'s3': ['moto', 's3fs', 'flask'], 'gs': ['gcp_storage_emulator', 'gcsfs']}[scheme]
    return [name for name in needed if importlib.util.find_spec(name) is None]


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _wait_for_port(port, proc, timeout=30.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f'server exited with status {proc.returncode}')
        try:
            socket.create_connection(('127.0.0.1', port), 0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f'server did not open port {port} in {timeout} s')


@contextlib.contextmanager
def _server(args, port):
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_port(port, proc)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def s3_env(endpoint):
    return dict(_ISOLATION, AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID='testing',
                AWS_SECRET_ACCESS_KEY='testing', AWS_DEFAULT_REGION='us-east-1', AWS_REGION='us-east-1')


def gcs_env(endpoint):
    # gcsfs reads STORAGE_EMULATOR_HOST, tensorstore's gcs driver TENSORSTORE_GCS_HTTP_URL; the emulator
    # serves no gRPC control API, so gcsfs's bucket-type probe (zonal buckets) is switched off.
    return dict(_ISOLATION, STORAGE_EMULATOR_HOST=endpoint, TENSORSTORE_GCS_HTTP_URL=endpoint,
                GOOGLE_CLOUD_PROJECT='test', FSSPEC_GCS_TOKEN='anon',
                GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT='false')


@contextlib.contextmanager
def s3_server():
    """Yields the Server of a moto S3 server holding one empty bucket."""
    port = free_port()
    endpoint = f'http://127.0.0.1:{port}'
    with _server([sys.executable, '-m', 'moto.server', '-H', '127.0.0.1', '-p', str(port)], port) as proc:
        env = s3_env(endpoint)
        with patched_environ(env):
            import boto3  # pylint: disable=import-outside-toplevel
            boto3.client('s3', endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
        yield Server(env, f's3://{BUCKET}', proc)


@contextlib.contextmanager
def gcs_server():
    """Yields the Server of a gcp-storage-emulator server holding one empty bucket."""
    port = free_port()
    endpoint = f'http://127.0.0.1:{port}'
    with tempfile.TemporaryDirectory() as data:
        launcher = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'gcs_emulator.py')
        args = [sys.executable, launcher, '-d', data, 'start', '-H', '127.0.0.1',
                '--port', str(port), '--default-bucket', BUCKET, '-q']
        with _server(args, port) as proc:
            yield Server(gcs_env(endpoint), f'gs://{BUCKET}', proc)


@contextlib.contextmanager
def patched_environ(env):
    """os.environ with `env` applied (empty values unset), restored afterwards."""
    saved = dict(os.environ)
    try:
        for key, value in env.items():
            if value:
                os.environ[key] = value
            else:
                os.environ.pop(key, None)
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def reset_clients():
    """Forgets cached fsspec filesystems, which hold the endpoint they were created with."""
    from etils.epath import backend  # pylint: disable=import-outside-toplevel
    import fsspec  # pylint: disable=import-outside-toplevel
    backend.fsspec_backend._get_filesystem.cache_clear()  # pylint: disable=protected-access
    for name in ('s3', 'gcs'):
        try:
            fsspec.get_filesystem_class(name).clear_instance_cache()
        except ImportError:
            pass


@contextlib.contextmanager
def client_env(server):
    """This process's clients pointed at `server` for the duration."""
    with patched_environ(server.env):
        reset_clients()
        try:
            yield
        finally:
            reset_clients()
