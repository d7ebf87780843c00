"""One way to read settings: Hydra ``key=value`` overrides composed over ``rss_world.configs``.

Every CLI that takes config overrides composes them here, so bad overrides fail the same way everywhere: a
``ValueError`` with one line that names the problem (the CLIs turn it into exit status 2).
"""

from __future__ import annotations

from collections.abc import Sequence


def compose(config_name: str, overrides: Sequence[str] = ()):
    """Compose ``configs/<config_name>.yaml`` with ``overrides`` (no working-directory change).

    Raises:
        ValueError: an override names an unknown key or group, has a bad type, or does not parse.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        with initialize_config_module(config_module="rss_world.configs", version_base=None):
            return hydra_compose(config_name=config_name, overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"bad config override{_unparsable(overrides)}: {first}") from None


def _unparsable(overrides: Sequence[str]) -> str:
    """`` 'x=['`` for the first override that does not parse, else ``""``."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    for text in overrides:
        try:
            parser.parse_overrides([text])
        except OverrideParseException:
            return f" {text!r}"
    return ""
