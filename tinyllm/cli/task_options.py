"""Task options as click flags: a :class:`tinyllm.tasks.Option` (plain data) becomes a
``click.Option`` with the same flag, type, default, help and checks."""
from __future__ import annotations

import click

from tinyllm.tasks import Option

_TYPES = {str: click.STRING, int: click.INT, float: click.FLOAT}


def click_type(opt: Option) -> click.ParamType:
    """The click type that checks an option's values (a bad one is a usage error, exit 2)."""
    if opt.choices:
        return click.Choice(list(opt.choices))
    if opt.type == "file":
        return click.Path(dir_okay=False)
    if opt.min is not None or opt.max is not None:
        kind = click.IntRange if opt.type is int else click.FloatRange
        return kind(opt.min, opt.max, min_open=opt.min_open, max_open=opt.max_open)
    return _TYPES[opt.type]


def _parser(parse):
    def callback(ctx, param, value):
        try:
            return parse(value)
        except ValueError as e:
            raise click.BadParameter(str(e)) from None
    return callback


def click_option(opt: Option) -> click.Option:
    """The flag of a task option."""
    kwargs = {"help": opt.help or None}
    if opt.show_default:
        kwargs["show_default"] = True
    if opt.metavar:
        kwargs["metavar"] = opt.metavar
    if opt.parse is not None:
        kwargs["callback"] = _parser(opt.parse)
    if opt.is_flag:
        return click.Option([opt.flag], is_flag=True, **kwargs)
    return click.Option([opt.flag], type=click_type(opt), default=opt.default, **kwargs)

