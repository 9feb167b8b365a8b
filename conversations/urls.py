from django.urls import path

from . import views

urlpatterns = [
    path("", views.home, name="home"),
    path("conversations/new/", views.conversation_create, name="conversation_create"),
    path("conversations/<uuid:public_id>/", views.conversation_detail, name="conversation_detail"),
]
