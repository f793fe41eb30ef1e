"""Faces in whole photo collections: a manifest or folders in, sharded Parquet out, resumable, local or on Ray.

``run_batch(inputs, out, BatchConfig(...))`` is the API; ``openmtcnn batch`` the command. Writing needs
pyarrow (the ``batch`` extra), the Ray engine Ray Data (the ``scale`` extra); importing this package needs neither.
"""
from openmtcnn.batch.config import BatchConfig, BatchError
from openmtcnn.batch.inputs import list_inputs
from openmtcnn.batch.run import run_batch

__all__ = ["BatchConfig", "BatchError", "list_inputs", "run_batch"]
