"""What people run: the command line (``cli``), the main job (``demo``), the training command
(``train``, and ``levels`` for checkpoints by mIoU level) and side-by-side reports
(``report``).  Apps use segcam's public API only: the web tool (``web``, ``segcam serve``) and batch mode
(``batch``, ``segcam batch``) included."""
