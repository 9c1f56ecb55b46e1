"""Recurrent cells: the course's, in its notation (NOTATION.md), and today's recurrences, each exact
to its paper. Pure torch, no Lightning, Hydra or MLflow. May import seqexp.checks only."""

from seqexp.cells.base import LinearRecurrence, Recurrence, RecurrentCell, State
from seqexp.cells.gru import GRUCell, SimpleGRUCell
from seqexp.cells.lru import LRUCell
from seqexp.cells.lstm import LSTMCell, PeepholeLSTMCell
from seqexp.cells.minimal import MinGRUCell, MinLSTMCell
from seqexp.cells.rnn import RNNCell
from seqexp.cells.selective import SelectiveSSMCell
from seqexp.cells.slstm import SLSTMCell

__all__ = [
    "GRUCell",
    "LRUCell",
    "LSTMCell",
    "LinearRecurrence",
    "MinGRUCell",
    "MinLSTMCell",
    "PeepholeLSTMCell",
    "RNNCell",
    "Recurrence",
    "RecurrentCell",
    "SLSTMCell",
    "SelectiveSSMCell",
    "SimpleGRUCell",
    "State",
]
