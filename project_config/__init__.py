"""One validated configuration schema shared by every stage (train, export, golden, hw, sim).

``load_config(name)`` resolves ``name`` in the working directory, then in ``configs/``,
parses YAML, fills defaults and validates every key. Any problem raises
:class:`ConfigError` whose message names the file and the key.
"""
from .schema import ConfigError, Config, LayerSpec, load_config, resolve_config_path, config_from_dict
from .cli import cli_main, UserError

__all__ = ["ConfigError", "Config", "LayerSpec", "load_config", "resolve_config_path",
           "config_from_dict", "cli_main", "UserError"]
