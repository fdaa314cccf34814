"""Measurements and maintenance tools run by hand or by make targets; the pipeline never
imports them."""
