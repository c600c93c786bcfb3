from .classifier import CosubClassifier
from .data_preprocessor import ClsDataPreprocessor
from .timm_factory import create_timm_model

__all__ = ['CosubClassifier', 'ClsDataPreprocessor', 'create_timm_model']
