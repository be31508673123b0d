"""FOAM: progressive, landmark- and attribute-conditioned face completion with frequency-oriented attentive filters."""
