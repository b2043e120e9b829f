"""The data layer: paired folders, labels, records, the class map, dataset readers, splits, and the
shared data as every training and evaluation job reads it (:mod:`ivif_fusion.data.shared`)."""
