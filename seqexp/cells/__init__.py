"""Recurrent cells in the course notation: pure torch, no Lightning, Hydra or MLflow. May import
seqexp.checks only."""

from seqexp.cells.base import RecurrentCell, State
from seqexp.cells.gru import GRUCell, SimpleGRUCell
from seqexp.cells.lstm import LSTMCell, PeepholeLSTMCell
from seqexp.cells.rnn import RNNCell

__all__ = [
    "GRUCell",
    "LSTMCell",
    "PeepholeLSTMCell",
    "RNNCell",
    "RecurrentCell",
    "SimpleGRUCell",
    "State",
]
