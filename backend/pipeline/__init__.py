"""What the commands run, end to end: ``fit`` (footage -> result file), ``bake`` (footage ->
.blend/.fbx/.glb), the recovery shared by them and the server, overlays, previews, the demo."""
