"""Typed configuration, parsed once: everything that varies between tasks or deployments lives in ``configs/``.

* :mod:`hope.config.files`: where ``configs/`` is (``$HOPE_CONFIG_DIR``), reading YAML, :class:`ConfigError`;
* :mod:`hope.config.task`: supervised task definitions (``configs/tasks/<name>.yaml``) and their network profiles;
* :mod:`hope.config.interactive`: their ``interactive:`` section (scribble corrections);
* :mod:`hope.config.server`: ``configs/server.yaml``.

Few-shot task definitions are in :mod:`hope.fewshot.config`, case vocabularies in :mod:`hope.cases.vocabulary`.
A bad or missing setting raises :class:`ConfigError` naming the file and the key.
"""

from hope.config.files import DEFAULT_CONFIG_DIR, REPO_ROOT, ConfigError, config_dir, load_task_file, read_yaml
from hope.config.interactive import InteractiveSettings
from hope.config.server import DatastoreSettings, ServerSettings, load_server_settings
from hope.config.task import (
    PROFILE_ENV,
    NetworkProfile,
    NetworkSpec,
    Preprocessing,
    TaskDefinition,
    load_task,
    parse_task,
)

__all__ = [
    "DEFAULT_CONFIG_DIR",
    "REPO_ROOT",
    "ConfigError",
    "DatastoreSettings",
    "InteractiveSettings",
    "NetworkProfile",
    "NetworkSpec",
    "PROFILE_ENV",
    "Preprocessing",
    "ServerSettings",
    "TaskDefinition",
    "config_dir",
    "load_server_settings",
    "load_task",
    "load_task_file",
    "parse_task",
    "read_yaml",
]
