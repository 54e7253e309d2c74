"""Starts gcp-storage-emulator with one gap filled: `x-goog-generation` on object downloads.

tensorstore's gcs driver (how orbax writes arrays to gs://) reads an object's
generation from that header, as real GCS sends it; the emulator (2026.7.19)
omits it, and tensorstore then fails with "Malformed StorageGeneration" when it
reads back an OCDBT manifest. The handler table is built when the emulator's
server module is imported, so the download handler is wrapped first.

  python tests/lib/gcs_emulator.py <the emulator's own arguments>
"""
import sys

from gcp_storage_emulator.handlers import objects

_download = objects.download


def download(request, response, storage, *args, **kwargs):
  try:
    obj = storage.get_file_obj(request.params['bucket_name'], request.params['object_id'])
    response['x-goog-generation'] = str(obj.get('generation') or '0')
    response['x-goog-metageneration'] = str(obj.get('metageneration') or '1')
  except Exception:  # pylint: disable=broad-except
    pass  # not found: the emulator's own handler answers
  return _download(request, response, storage, *args, **kwargs)


objects.download = download

if __name__ == '__main__':
  from gcp_storage_emulator import __main__ as emulator  # pylint: disable=import-outside-toplevel
  emulator.main(sys.argv[1:])
