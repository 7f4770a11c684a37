"""How a run records its data so that `val` finds it again from any folder."""

from pathlib import Path


def data_reference(data: str, embedded=()) -> str:
    """Embedded names as they are, paths absolute, also inside the FORM:PATH,PATH;PATH,... strings of
    detection and segmentation data (coco:..., masks:...)."""
    if not data or data in embedded:
        return data
    form, colon, rest = data.partition(":")
    if colon and len(form) > 1 and form.isalpha():  # coco:..., masks:... (not a Windows drive C:)
        return f"{form}:" + ";".join(",".join(str(Path(p.strip()).resolve()) for p in part.split(","))
                                     for part in rest.split(";"))
    return str(Path(data).resolve())
