"""A Celery application whose task starts a session, as an agent run in a task queue would.

The broker is kombu's filesystem transport in $CELERY_FOLDER: no broker server to run.
"""

import os

from celery import Celery

import agentsonar_telemetry as at

folder = os.environ["CELERY_FOLDER"]
app = Celery("celery_tasks", broker="filesystem://")
# Every folder in the test's tmp: kombu's default control folder is "control" under the working directory.
app.conf.broker_transport_options = {
    "data_folder_in": folder,
    "data_folder_out": folder,
    "control_folder": os.path.join(folder, "control"),
    "store_processed": False,
}
app.conf.task_ignore_result = True
app.conf.worker_hijack_root_logger = False


@app.task
def run_agent() -> str:
    return at.start_session("0.7.0", "celery_task").rule
