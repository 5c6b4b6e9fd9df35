"""User management (admin only)."""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from marshmallow import Schema, fields, validate

from services.api.auth.schemas import UserSchema
from services.api.pagination import PageArgs, page_schema, paginate
from services.api.parsing import Blueprint
from services.api.runtime import db, runtime
from services.api.security import login_required, me
from shared import users
from shared.errors import ConflictError, FieldError, NotFoundError
from shared.models import User
from shared.models.users import ROLES

blp = Blueprint("users", __name__, url_prefix="/api/users", description="Manage users (admin)")


class UserCreateSchema(Schema):
    email = fields.Email(required=True)
    password = fields.String(required=True, load_only=True, validate=validate.Length(max=1024))
    name = fields.String(allow_none=True, validate=validate.Length(max=200))
    role = fields.String(load_default="viewer", validate=validate.OneOf(ROLES))


class UserUpdateSchema(Schema):
    name = fields.String(allow_none=True, validate=validate.Length(max=200))
    role = fields.String(validate=validate.OneOf(ROLES))
    is_active = fields.Boolean()
    password = fields.String(load_only=True, validate=validate.Length(max=1024))


def _get(user_id: uuid.UUID) -> User:
    user = db().get(User, user_id)
    if user is None:
        raise NotFoundError("No such user.")
    return user


@blp.route("", methods=["GET"])
@login_required("admin")
@blp.arguments(PageArgs, location="query")
@blp.response(200, page_schema(UserSchema))
def list_users(args):
    body, headers = paginate(db(), sa.select(User).order_by(User.email), args)
    return body, 200, headers


@blp.route("", methods=["POST"])
@login_required("admin")
@blp.arguments(UserCreateSchema)
@blp.response(201, UserSchema)
def create_user(body):
    session = db()
    user = users.create_user(session, **body)
    session.commit()
    return user


@blp.route("/<uuid:user_id>", methods=["GET"])
@login_required("admin")
@blp.response(200, UserSchema)
def get_user(user_id):
    return _get(user_id)


@blp.route("/<uuid:user_id>", methods=["PATCH"])
@login_required("admin")
@blp.arguments(UserUpdateSchema)
@blp.response(200, UserSchema)
def update_user(body, user_id):
    session = db()
    user = _get(user_id)
    if user.id == me().id and (body.get("role", "admin") != "admin" or body.get("is_active") is False):
        raise ConflictError("You cannot demote or deactivate yourself.")
    if "password" in body:
        users.set_password(session, user, body.pop("password"), now=runtime().clock.now())
    for key, value in body.items():
        setattr(user, key, value)
    session.commit()
    return user


@blp.route("/<uuid:user_id>", methods=["DELETE"])
@login_required("admin")
@blp.response(204)
def delete_user(user_id):
    session = db()
    user = _get(user_id)
    if user.id == me().id:
        raise FieldError("id", "you cannot delete yourself")
    session.delete(user)
    session.commit()
