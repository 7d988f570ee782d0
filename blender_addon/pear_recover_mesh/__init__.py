"""PEAR Recover Mesh: footage of a person -> an animated SMPL-X-skeleton rig with expression
shape keys, recovered by a PEAR backend (``backend serve``).

The modules split so that most of the add-on is plain Python: ``convert`` and ``keyframes``
(numpy math), ``scene`` (the bpy scene builder, shared with the headless ``backend bake``),
``session`` (a recovery driven step by step), ``ui`` (panel, properties, operators). bpy is
imported only on registration, so the numpy parts import anywhere.
"""


def register() -> None:
    from . import ui

    ui.register()


def unregister() -> None:
    from . import ui

    ui.unregister()
