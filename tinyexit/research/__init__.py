"""Research features on top of the main flow: exit-aware augmentation (augment), a learned confidence head
(confidence), exit-placement search (search), distillation into the exits (distill) and compression
(compress). Each reads and writes a run directory through tinyexit.run; none of the main stages imports them."""
