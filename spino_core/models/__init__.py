"""Networks: the DINOv2 backbone, the label generator heads, the student and their files."""
