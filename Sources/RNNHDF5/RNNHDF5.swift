// RNNHDF5: placeholder until its issue lands.
import CHDF5
