"""The repository and its bundled reference export, named once for every test."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# The bundled copy of the reference export (dcgm_metrics_20250718_134233.csv).
REFERENCE_CSV = REPO / "data" / "dcgm_metrics_sample.csv"
REFERENCE_DATA_LINES = 2470
# Its header line, as the export writes it (without the line break).
REFERENCE_HEADER = (
    b"timestamp,metric_name,gpu_id,device,uuid,modelName,Hostname,"
    b"container,pod,namespace,value,labels_raw"
)
REFERENCE_COLUMNS = tuple(REFERENCE_HEADER.decode().split(","))
# The GPU of its first row (also the example in the OpenAPI schema).
REFERENCE_UUID = "GPU-5fd4f087-86f3-7a43-b711-4771313afc50"
