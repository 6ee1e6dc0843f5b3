"""What a run shows a reader: the report page (:mod:`~vqvdm_core.reporting.report`,
``runs/<name>/report.html``), the pictures it derives (:mod:`~vqvdm_core.reporting.media`) and
the training curves (:mod:`~vqvdm_core.reporting.plots`, ``loss_curves.png``)."""
