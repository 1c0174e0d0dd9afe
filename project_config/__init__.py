"""One validated configuration schema shared by every stage (train, export, golden, hw, sim).

``load_config(name)`` resolves ``name`` in the working directory, then in ``configs/``,
parses YAML, fills defaults and validates every key. Any problem raises
:class:`ConfigError` whose message names the file and the key. ``Config.layers`` holds each
layer's :class:`LayerGeometry` (project_config.geometry), which the export and the hardware
plan carry unchanged.
"""
from .cli import UserError, cli_main
from .geometry import LayerGeometry
from .schema import Config, ConfigError, config_from_dict, load_config, resolve_config_path

__all__ = ["ConfigError", "Config", "LayerGeometry", "load_config", "resolve_config_path",
           "config_from_dict", "cli_main", "UserError"]
