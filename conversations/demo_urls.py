"""The built-in demo model's OpenAI-compatible endpoints (only the URLconf imports demo)."""

from django.urls import path

from . import demo

urlpatterns = [
    path("chat/completions", demo.chat_completions, name="demo_chat_completions"),
    path("models", demo.models, name="demo_models"),
]
