"""One look for every command's help: flags show no value type, arguments are upper case.

Typer renders a `<bool>` type beside every flag although a flag takes no value (`--force
true` is refused), a Python type beside every argument although its metavar already names it
(`INPUT  <str>`), and writes usage lines with the argument's own spelling (`[prompt]`,
`{PROMPTS_FILE}`, `{path}`). These come from methods of Typer's parameter classes, so they are
adjusted there, once, for every command; a Typer without them is left as it is. (Every option
and argument declares a metavar that says what it takes, e.g. `FILE|DIR|-` or `START:END`.)
"""

from __future__ import annotations


def apply() -> None:
    try:
        from typer.core import TyperArgument, TyperOption
    except ImportError:  # pragma: no cover - a Typer without these classes
        return
    shown = getattr(TyperOption, "display_type_rich", None)
    if shown is not None and not getattr(shown, "_fluxmusic", False):

        def display_type_rich(self, ctx):
            return None if self.is_flag else shown(self, ctx)

        display_type_rich._fluxmusic = True  # type: ignore[attr-defined]
        TyperOption.display_type_rich = display_type_rich
    typed = getattr(TyperArgument, "display_type_rich", None)
    if typed is not None and not getattr(typed, "_fluxmusic", False):

        def argument_type(self, ctx):
            return None if self.metavar else typed(self, ctx)

        argument_type._fluxmusic = True  # type: ignore[attr-defined]
        TyperArgument.display_type_rich = argument_type
    if hasattr(TyperArgument, "_usage_display_name") and not getattr(
        TyperArgument._usage_display_name, "_fluxmusic", False
    ):

        def usage_name(self) -> str:
            name = (self.metavar or self.name or "").upper()
            if self.nargs != 1:
                name += "..."
            return name if self.required else f"[{name}]"

        usage_name._fluxmusic = True  # type: ignore[attr-defined]
        TyperArgument._usage_display_name = usage_name
