"""Research features on top of the main flow: exit-aware augmentation (augment, over the Keras graph analysis of
graph), a learned confidence head (confidence; compared with max-softmax in confidence_eval), exit-placement
search (search; a chosen design built and measured by search_verify), distillation into the exits (distill) and
compression (compress). Each reads and writes a run directory through tinyexit.run; none of the main stages
imports them."""
