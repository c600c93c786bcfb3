from .classifier import CosubClassifier
from .data_preprocessor import ClsDataPreprocessor
from .probe_head import LinearProbeHead
from .seg_backbone import TimmSegBackbone, plain_out_indices
from .segmentor import CosubEncoderDecoder
from .stochastic_depth import configure_stochastic_depth
from .timm_factory import create_timm_model

__all__ = [
    'CosubClassifier', 'ClsDataPreprocessor', 'LinearProbeHead', 'TimmSegBackbone', 'plain_out_indices',
    'CosubEncoderDecoder', 'create_timm_model', 'configure_stochastic_depth'
]
